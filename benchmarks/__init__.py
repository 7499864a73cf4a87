"""xray benchmarks: timings never go into tests; they go here, with the machine they ran on."""
