"""The listening room, standing on the core: clips written to files, their curation score, the
run's page, and the hooks that make a training run generate and show clips as it goes."""
