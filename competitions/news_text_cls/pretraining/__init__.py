"""Masked-language-model pretraining of BERT on the contest's own text (see :mod:`..pretrain` for the verb)."""
