"""Running a study: prepare, drive, mirror, progress, profiling, confirm."""
