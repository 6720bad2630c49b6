"""Returns that define the MinAtar normalised score: 0 = uniform random policy, 100 = reference.

``RANDOM``: mean return of a uniform random policy over MinAtar's 6 actions, measured with our
env (sticky actions 0.1, difficulty ramping on, no time limit beyond the games' own) by::

    python scripts/measure_minatar_random.py --episodes 1000 --seed 0

(1000 episodes per game: 10 envs x 100 episodes each, counting each env's first 100 episodes so
that short episodes are not over-represented; random actions from numpy's PCG64 seeded with 0.)
The standard errors printed by that run are in the comments.

``REFERENCE``: round targets, not published numbers. The MinAtar paper (Young & Tian, 2019,
arXiv:1903.03176) reports its DQN and AC(lambda) results only as learning curves, and we could not
retrieve a reliable numeric table from them; these values are round returns of the order a
well-trained agent reaches in each game. They are deliberately not our shipped experts' returns
(teachers/README.md): with the experts as 100, capped scores would hide a student that surpasses
its teachers, which is what kickstarting is for. Every committed result uses these values; change
them and every suite score changes. Compare MinAtar normalised scores between agents, not with 100.
"""

RANDOM = {  # mean over 1000 episodes (standard error; mean episode length in agent steps)
    "Asterix": 0.488,        # (0.028; 70.9)
    "Breakout": 0.486,       # (0.023; 11.0) MinAtar's README quotes 0.5 +/- 0.023 for random play
    "Freeway": 0.144,        # (0.012; 2501.0)
    "Seaquest": 0.082,       # (0.012; 29.8)
    "SpaceInvaders": 2.766,  # (0.072; 50.0)
}

REFERENCE = {
    "Asterix": 40.0,
    "Breakout": 60.0,
    "Freeway": 60.0,
    "Seaquest": 60.0,
    "SpaceInvaders": 200.0,
}
