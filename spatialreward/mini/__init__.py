"""SpatialReward-Mini: the embedded spatial reward model.

``features`` prepares inputs (images at 128 px, pixel evidence, words), ``model`` is the
network, ``data`` turns SynthEdit datasets into training arrays, ``train`` trains it.
The backend that serves it is :mod:`spatialreward.backends.mini`.
"""
