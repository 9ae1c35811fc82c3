"""Operations: liveness, readiness, metrics."""
