"""Operations: schedules, resource monitoring, watching deployments, alerts, the task cache."""
