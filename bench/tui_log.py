"""Benchmark of the TUI log view on a 1 GiB log (headless Textual).

What it measures, each phase in its own Python process (so RSS figures do not
mix):

open      Time from mounting ``LogView(LogReader(path))`` on the 1 GiB file to the first
          frame whose rendered rows end with the file's last line; RSS added
          at that frame; time until the background index is complete; RSS
          added after that and the peak (VmHWM) over the phase.
follow    In the same process, with the index complete and the view
          following: a separate writer process appends ``--rate`` lines/s
          (default 100,000, in batches every 10 ms) to the same file for
          ``--seconds`` (5). The "engine" is simulated by a 100 Hz timer
          calling ``view.notify_grew()`` (more often than frames, so the
          coalescing is exercised). Frame times are the timestamps of
          ``App._display`` calls with something to draw (the compositor's
          frame, called in headless mode too); the longest gap between two
          frames while data flows is the figure. A 10 ms heartbeat timer also
          records the event loop's worst lateness. At the end the last
          written line must be on screen.
open-cold The open phase again after ``posix_fadvise(DONTNEED)`` on the file
          (evicts it from the page cache where the kernel allows), so the
          tail and the index are read from disk.
baseline  Textual's own ``Log`` widget: read the first ``--baseline-lines``
          lines of the same file (loading all of it would take minutes and
          gigabytes) and give them to ``Log.write_lines`` in one call (its
          fastest path), until the first frame shows the last of them; time
          and RSS are also extrapolated linearly to the whole file's lines.

The file (``--path``, default /tmp/evopilot-bench-1g.log) is generated once
by writing a 1 MiB block of varied lines repeatedly, plus a unique last line;
it is reused by later runs (and cut back to its original size after the
follow phase).

    python3 bench/tui_log.py            # all phases, prints a summary + JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAST_LINE = "THE LAST LINE OF THE BENCH LOG"
GIB = 1024**3
SIZE = (160, 48)


def rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB from /proc/self/status."""
    rss = hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def schedstat() -> tuple[float, float]:
    """(seconds on CPU, seconds runnable but waiting for a CPU) of this process's
    threads so far, from /proc/<pid>/task/*/schedstat."""
    on = wait = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                a, b, _ = f.read().split()
        except OSError:
            continue
        on += int(a)
        wait += int(b)
    return on / 1e9, wait / 1e9


def ensure_file(path: Path, size: int) -> int:
    """Create the log if needed; return its size without the follow phase's additions."""
    meta = path.with_suffix(path.suffix + ".size")
    if path.exists() and meta.exists():
        want = int(meta.read_text())
        if path.stat().st_size >= want >= size:
            if path.stat().st_size > want:
                os.truncate(path, want)
            return want
    t0 = time.perf_counter()
    lines = []
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARNING"]
    i = 0
    block_size = 0
    while block_size < 1024 * 1024:
        line = (
            f"2024-05-01T12:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d} {levels[i % 5]:7s} "
            f"worker-{i % 8} step={i} loss={1 / (i + 1):.6f} lr=3e-4 "
            f"{'tokens/s=' + str(1000 + i % 977) if i % 3 else 'checkpoint saved to /data/run/ckpt-' + str(i)}\n"
        )
        lines.append(line)
        block_size += len(line)
        i += 1
    block = "".join(lines).encode()
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)
        f.write(LAST_LINE.encode() + b"\n")
    final = path.stat().st_size
    meta.write_text(str(final))
    print(f"generated {path} ({final / GIB:.2f} GiB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return final


# -- the LogView phases -----------------------------------------------------------


WRITER = r"""
import sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interval = 0.01
per = max(1, int(rate * interval))
pad = b"x" * 24
f = open(path, "ab", buffering=0)
start = time.perf_counter()
n = k = 0
while True:
    target = start + k * interval
    now = time.perf_counter()
    if now - start >= seconds:
        break
    if target > now:
        time.sleep(target - now)
    f.write(b"".join(b"writer line %09d loss=0.123456 lr=0.0003 %s\n" % (n + j, pad) for j in range(per)))
    n += per
    k += 1
elapsed = time.perf_counter() - start
f.write(b"WRITER DONE %d\n" % n)
f.close()
print(n, elapsed)
"""


def run_logview(args: argparse.Namespace, cold: bool) -> dict:
    from textual.app import App

    from evopilot.core.jobs.logread import LogReader
    from evopilot.tui.widgets.log_view import LogView

    path = str(args.path)
    if cold:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

    class BenchApp(App):
        CSS = "LogView { height: 1fr; }"

        def __init__(self) -> None:
            super().__init__()
            self.view: LogView | None = None
            self.frames: list[float] = []
            self.t_first: float | None = None
            self.rss_first = 0
            self.want_last = LAST_LINE

        def _display(self, screen, renderable) -> None:  # one call per frame
            super()._display(screen, renderable)
            if renderable is None:
                return
            now = time.perf_counter()
            self.frames.append(now)
            if self.t_first is None and self.view is not None and self.view.is_mounted:
                rows = [r.rstrip() for r in self.view.visible_text() if r.strip()]
                if rows and rows[-1].endswith(self.want_last):
                    self.t_first = now
                    self.rss_first = rss_kb()[0]

    result: dict = {
        "phase": "open-cold" if cold else "open",
        "gc_freeze": args.gc_freeze,
        "file_bytes": os.path.getsize(path),
        "loadavg_1min_before": round(os.getloadavg()[0], 2),
    }

    async def drive() -> None:
        app = BenchApp()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            if args.gc_freeze:
                import gc

                gc.freeze()  # what an app can do once started: see RESULTS.md
            rss0, _ = rss_kb()
            t0 = time.perf_counter()
            app.view = LogView(LogReader(path))
            await app.mount(app.view)
            app.view.focus()
            while app.t_first is None and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.001)
            result["open_to_last_line_frame_s"] = round(app.t_first - t0, 4)
            result["tail_mode_at_first_frame"] = app.view.is_tail_mode
            result["rss_added_at_first_frame_mb"] = round((app.rss_first - rss0) / 1024, 1)
            index = app.view.index
            while (app.view.is_tail_mode or app.view._indexing) and time.perf_counter() - t0 < 600:
                await asyncio.sleep(0.005)
            t_indexed = time.perf_counter()
            await pilot.pause()
            rss1, hwm = rss_kb()
            result["index_complete_s"] = round(t_indexed - t0, 3)
            result["lines"] = index.line_count
            result["checkpoints"] = int(index._ncp)
            result["rss_before_mb"] = round(rss0 / 1024, 1)
            result["rss_added_after_index_mb"] = round((rss1 - rss0) / 1024, 1)
            result["peak_rss_added_mb"] = round((hwm - rss0) / 1024, 1)
            rows = [r.rstrip() for r in app.view.visible_text() if r.strip()]
            result["last_row_after_index"] = rows[-1][-40:]
            if cold or args.seconds <= 0:
                return
            # -- follow phase --
            view = app.view
            assert view.following
            beats: list[float] = []
            app.set_interval(0.01, lambda: beats.append(time.perf_counter()))
            notifier = app.set_interval(0.01, view.notify_grew)
            await asyncio.sleep(0.2)
            app.frames.clear()
            beats.clear()
            import gc

            pauses: list[tuple[int, float]] = []
            gc_start = [0.0]

            def on_gc(phase: str, info: dict) -> None:
                if phase == "start":
                    gc_start[0] = time.perf_counter()
                else:
                    pauses.append((info["generation"], time.perf_counter() - gc_start[0]))

            gc.callbacks.append(on_gc)
            size_before = os.path.getsize(path)
            cpu0 = os.times()
            sched0 = schedstat()
            t_start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER, path, str(args.rate), str(args.seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            t_end = time.perf_counter()
            cpu1 = os.times()
            sched1 = schedstat()
            gc.callbacks.remove(on_gc)
            full = [d for g, d in pauses if g == 2]
            written, writer_elapsed = out.split()
            frames = [t for t in app.frames if t_start + 0.05 <= t <= t_end]
            gaps = sorted(b - a for a, b in zip(frames, frames[1:]))
            beat = [t for t in beats if t_start <= t <= t_end]
            late = max((b - a for a, b in zip(beat, beat[1:])), default=0.0)
            app.want_last = f"WRITER DONE {int(written)}"
            await asyncio.sleep(0.3)
            notifier.stop()
            await pilot.pause()
            rows = [r.rstrip() for r in view.visible_text() if r.strip()]
            os.truncate(path, size_before)  # keep the 1 GiB file reusable
            result["follow"] = {
                "lines_written": int(written),
                "writer_seconds": round(float(writer_elapsed), 2),
                "lines_per_s": round(int(written) / float(writer_elapsed)),
                "frames": len(frames),
                "fps": round(len(frames) / (t_end - t_start), 1),
                "max_frame_gap_ms": round(1000 * gaps[-1], 1) if gaps else None,
                "p99_frame_gap_ms": round(1000 * gaps[int(0.99 * (len(gaps) - 1))], 1) if gaps else None,
                "median_frame_gap_ms": round(1000 * gaps[len(gaps) // 2], 1) if gaps else None,
                "max_heartbeat_interval_ms": round(1000 * late, 1),
                "app_cpu_percent": round(
                    100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / (t_end - t_start)
                ),
                "app_cpu_ms_per_frame": round(
                    1000 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / max(1, len(frames)), 1
                ),
                "loadavg_1min_after": round(os.getloadavg()[0], 2),
                # Time the app was ready to run but had no CPU (other processes).
                "runqueue_wait_percent": round(100 * (sched1[1] - sched0[1]) / (t_end - t_start)),
                "gc_collections": len(pauses),
                "gc_full_collections": len(full),
                "gc_full_max_ms": round(1000 * max(full, default=0.0), 1),
                "still_following": view.following,
                "last_line_on_screen": bool(rows) and rows[-1].endswith(app.want_last),
                "lines_after": view.index.line_count,
                "rss_added_mb": round((rss_kb()[0] - rss0) / 1024, 1),
            }

    asyncio.run(drive())
    return result


def run_baseline(args: argparse.Namespace) -> dict:
    import gc

    from textual.app import App
    from textual.widgets import Log

    path = str(args.path)
    n = args.baseline_lines

    class BaseApp(App):
        CSS = "Log { height: 1fr; }"

        def __init__(self) -> None:
            super().__init__()
            self.log_widget: Log | None = None
            self.t_first: float | None = None
            self.want: str | None = None

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is None or self.t_first is not None or self.want is None:
                return
            log = self.log_widget
            if log is not None and log.is_mounted:
                rows = [log.render_line(y).text.rstrip() for y in range(log.scrollable_content_region.height)]
                rows = [r for r in rows if r]
                if rows and rows[-1].endswith(self.want):
                    self.t_first = time.perf_counter()

    result: dict = {"phase": "baseline", "widget": "textual.widgets.Log", "lines_loaded": n}

    async def drive() -> None:
        app = BaseApp()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            gc.collect()
            rss0, _ = rss_kb()
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                lines = [f.readline().decode("utf-8", "replace").rstrip("\n") for _ in range(n)]
            t_read = time.perf_counter()
            app.log_widget = Log()
            await app.mount(app.log_widget)
            app.want = lines[-1]
            t_w = time.perf_counter()
            app.log_widget.write_lines(lines)
            t_written = time.perf_counter()
            del lines
            while app.t_first is None and time.perf_counter() - t0 < 600:
                await asyncio.sleep(0.001)
            # Let Log's width-measuring thread finish before reading RSS.
            await app.workers.wait_for_complete()
            await pilot.pause()
            gc.collect()
            rss1, hwm = rss_kb()
            result["read_s"] = round(t_read - t0, 3)
            result["write_lines_s"] = round(t_written - t_w, 3)
            result["open_to_last_line_frame_s"] = round(app.t_first - t0, 3)
            result["rss_added_mb"] = round((rss1 - rss0) / 1024, 1)
            result["peak_rss_added_mb"] = round((hwm - rss0) / 1024, 1)

    asyncio.run(drive())
    with open(path, "rb") as f:
        size = 0
        for _ in range(n):
            size += len(f.readline())
    result["bytes_loaded"] = size
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=Path("/tmp/evopilot-bench-1g.log"))
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=100_000, help="lines/s appended in the follow phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the follow phase (0: skip)")
    parser.add_argument("--baseline-lines", type=int, default=1_000_000)
    parser.add_argument("--phase", choices=["all", "open", "open-cold", "baseline"], default="all")
    parser.add_argument(
        "--gc-freeze", action="store_true",
        help="call gc.freeze() after the app has started (LogView phases)",
    )
    args = parser.parse_args()

    if args.phase == "open":
        print(json.dumps(run_logview(args, cold=False)))
        return
    if args.phase == "open-cold":
        print(json.dumps(run_logview(args, cold=True)))
        return
    if args.phase == "baseline":
        print(json.dumps(run_baseline(args)))
        return

    original = ensure_file(args.path, int(args.size_gib * GIB))
    results = []
    common = ["--path", str(args.path), "--rate", str(args.rate), "--seconds", str(args.seconds),
              "--baseline-lines", str(args.baseline_lines)]
    if args.gc_freeze:
        common.append("--gc-freeze")
    try:
        for phase in ("open", "open-cold", "baseline"):
            out = subprocess.run(
                [sys.executable, __file__, "--phase", phase, *common],
                check=True, capture_output=True, text=True,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(data)
            # The follow phase appended to the file: cut it back for reuse.
            if os.path.getsize(args.path) > original:
                os.truncate(args.path, original)
    finally:
        if args.path.exists() and os.path.getsize(args.path) > original:
            os.truncate(args.path, original)

    warm, cold, base = results
    total_lines = warm["lines"]
    factor = total_lines / base["lines_loaded"]
    base["extrapolated_full_file_s"] = round(base["open_to_last_line_frame_s"] * factor, 1)
    base["extrapolated_full_file_rss_gb"] = round(base["rss_added_mb"] * factor / 1024, 1)
    print(json.dumps(results, indent=1))
    f = warm.get("follow", {})
    print()
    print(f"file: {args.path} {warm['file_bytes'] / GIB:.2f} GiB, {total_lines:,} lines")
    for r in (warm, cold):
        print(
            f"LogView {r['phase']:9s}: last line on screen after {r['open_to_last_line_frame_s'] * 1000:.0f} ms "
            f"(+{r['rss_added_at_first_frame_mb']} MB RSS); index complete after {r['index_complete_s']} s "
            f"(+{r['rss_added_after_index_mb']} MB RSS, peak +{r['peak_rss_added_mb']} MB)"
        )
    print(
        f"Log baseline: {base['lines_loaded']:,} lines ({base['bytes_loaded'] / 1e6:.0f} MB) -> "
        f"{base['open_to_last_line_frame_s']} s, +{base['rss_added_mb']} MB RSS (peak +{base['peak_rss_added_mb']}); "
        f"x{factor:.1f} for the whole file ~ {base['extrapolated_full_file_s']} s, ~{base['extrapolated_full_file_rss_gb']} GB"
    )
    if f:
        print(
            f"follow: {f['lines_per_s']:,} lines/s for {f['writer_seconds']} s; {f['frames']} frames ({f['fps']} fps); "
            f"frame gap max {f['max_frame_gap_ms']} ms, p99 {f['p99_frame_gap_ms']} ms, median {f['median_frame_gap_ms']} ms; "
            f"heartbeat max {f['max_heartbeat_interval_ms']} ms; app CPU {f['app_cpu_percent']}% "
            f"({f['app_cpu_ms_per_frame']} ms/frame), waiting for a CPU {f['runqueue_wait_percent']}% of the time; "
            f"load avg {f['loadavg_1min_after']}; "
            f"{f['gc_full_collections']} full GCs, longest {f['gc_full_max_ms']} ms; "
            f"last line on screen: {f['last_line_on_screen']}, following: {f['still_following']}"
        )


if __name__ == "__main__":
    main()
