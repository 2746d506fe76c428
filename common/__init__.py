"""What every contest shares: seeding, folds, metrics, configs, the model registry, the trainer, CV, tuning,
submissions."""
