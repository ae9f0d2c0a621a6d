"""Paper experiments built on training and evaluation: LongSSM length extension, H3 synthetic recall."""
