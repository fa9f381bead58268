"""SynthEdit: procedural edit data with exact ground truth.

``scenes`` builds named objects on procedural or photographic backgrounds,
``language`` writes instructions, ``edits`` performs the correct edit and the flawed
ones, ``degrade`` adds the re-encoding real editors cause, ``rubric`` sets the target
scores and ``generate`` writes datasets in the pair format.
"""
