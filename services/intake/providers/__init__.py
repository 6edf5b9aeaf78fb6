"""Provider adapters: each turns one telephony system's request into a `CallReport`."""
