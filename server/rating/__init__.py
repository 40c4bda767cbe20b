"""Blinded human MGS scoring of stored face crops and model-vs-human agreement (docs/rating.md).

- ``config``     the ``[rating]`` section of the collector's config
- ``sampling``   which crops go into the rating pool each day (stratified by P(pain) and light/dark)
- ``pool``       the pool in the database and on disk: sampling stored crops, blinded copies, expiry
- ``jobs``       the hourly pool job
- ``sessions``   a rater's sitting: random queue under opaque tokens, ratings stored and changed
- ``stats``      agreement statistics in plain numpy (Pearson r, ICC, Bland-Altman, Cohen's kappa, Wilson)
- ``agreement``  model vs human and human vs human figures from ratings; groupings; tidy rows
- ``data``       the rating tables read into those records; the page's, API's and alert's figures
- ``export``     rated crops written in the lab formats ``amgs model train`` reads
"""
