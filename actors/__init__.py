"""Ray actors: the coordinator, workers and source actors, thin over plain managers."""
