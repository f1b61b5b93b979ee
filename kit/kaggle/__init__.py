"""The Kaggle round trip: download, submit, scores, leaderboard and the GPU kernel.

Everything goes through the official ``kaggle`` client, built in one place: :mod:`kit.kaggle.client`.
"""
