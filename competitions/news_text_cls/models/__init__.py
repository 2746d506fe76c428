"""The news contest's models; importing this package registers them (``tfidf``, ``textcnn``, ``lstm``, ``fasttext``, ...)."""

from competitions.news_text_cls.models import fasttext, lstm, textcnn, tfidf  # noqa: F401

# --- BERT: the BERT module registers itself when imported here (added by its author) ---
from . import bert  # noqa: E402, F401
# --- end BERT ---
