"""Competence Bridge: InfoCaption course results become WinLas competence grants."""
