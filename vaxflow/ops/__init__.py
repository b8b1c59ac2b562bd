"""Operations: consumer lag, replay and redrive."""
