"""Training: labelled folders (:mod:`.dataset`, :mod:`.sources`) → grouped cross-validation
(:mod:`.evaluate`, :mod:`.members`) → stacked ensemble → transfer checks (:mod:`.transfer`) →
model card (:mod:`.model_card`, :mod:`.plots`) → bundle (:mod:`.train`); ablations
(:mod:`.ablation`). Uses ``artsy.models`` and ``artsy.features``, never ``artsy.job``.
"""
