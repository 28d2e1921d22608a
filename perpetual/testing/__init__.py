"""Test helpers shipped with the package: `perpetual.testing.fake_openai`, a fake OpenAI-compatible server.

Nothing is imported here so that `python -m perpetual.testing.fake_openai` runs the module only once.
"""
