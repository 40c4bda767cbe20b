"""Blinded human MGS scoring of stored face crops and model-vs-human agreement (issue 12).

- ``stats``     agreement statistics in plain numpy (Pearson r, ICC, Bland-Altman, Cohen's kappa, accuracy)
- ``sampling``  which crops go into the rating pool each day (stratified by P(pain) and light/dark)
- ``export``    rated crops written in the lab formats ``amgs model train`` reads
- ``config``    the ``[rating]`` section of the collector's config
"""
