"""What places the calls an agent starts with the Call button (§10), one file per dialer."""
