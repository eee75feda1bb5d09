"""The language-model task (SPEC A): data, model, losses, task, evaluation."""
