"""The front ends: command parsing, rendering, the console, one-shot and script modes."""
