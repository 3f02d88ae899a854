"""Models and their packaging: classical learners (:mod:`.classical`), the from-scratch CNN
(:mod:`.cnn`), the pretrained backbone (:mod:`.backbone`, converted by :mod:`.convert`, run by
:mod:`.inference`), the emotion head (:mod:`.emotion`), the ensemble (:mod:`.ensemble`) and the
bundle that ships them (:mod:`.bundle`, :mod:`.bundle_save`, :mod:`.manifest`).

Used by ``artsy.job`` and ``artsy.training``; imports neither.
"""
