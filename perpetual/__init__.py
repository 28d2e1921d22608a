"""Perpetual: can an instruct-tuned LM learn new facts by fine-tuning, and how does that compare with RAG?"""

__version__ = "0.1.0"
