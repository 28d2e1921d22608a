"""The teacher: turns chunks into training flashcards and evaluation MCQs (backends: offline, openai)."""
