"""AI insights: incident summaries, similar past incidents, questions in plain language.

The model sits behind one adapter (``observai.ai.model.LanguageModel``; Gemini's is ``observai.ai.gemini``), so the
provider can change. Nothing here imports the provider's SDK at import time: only a call does.
"""
