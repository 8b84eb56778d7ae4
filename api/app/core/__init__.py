"""Process-wide plumbing: settings and logging."""
