"""Ray-free domain logic: DM's API models and the folds that rebuild state from events."""
