"""The nightly batch job: discover (:mod:`.discover`) → decide what is new
(:mod:`.incremental`) → plan (:mod:`.plan`) → decode, features and models on Ray
(:mod:`.predict`, :mod:`.rows`, :mod:`.pipeline`) → the Parquet table (:mod:`.schema`,
:mod:`.output`) with its summary and report (:mod:`.summary`, :mod:`.run_report`); console
filtering (:mod:`.console`). Uses ``artsy.models`` and ``artsy.features``, never
``artsy.training``.
"""
