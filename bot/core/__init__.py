"""Building blocks every layer shares and none of which does I/O of its own: settings, time, durations, caches, pools."""
