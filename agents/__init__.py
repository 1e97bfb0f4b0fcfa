"""The learning rule: SVG(0) with Retrace and a KL-regularised, information-restricted prior.

Nothing here knows about processes: the learner consumes an iterator of replay samples and
serves variables; the actor selects actions and writes to an adder.
"""
