"""The dialogue task (SPEC B): data, model, losses, task, evaluation."""
