"""The embedded demo: a simulated ISR data set in a local butler repository."""
