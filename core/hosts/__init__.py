"""Where commands run: the local machine or SSH hosts, behind one ``Host`` interface."""
