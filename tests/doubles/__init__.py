"""Protocol-level doubles of things that cannot run here (vendor CLIs, WS-Management)."""
