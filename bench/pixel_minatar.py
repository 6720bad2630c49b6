"""A diagnostic instrument: MinAtar games drawn as Atari-sized frames, to test the pixel path alone.

MinAtar learns here and Atari Pong long did not. This module asks whether the difference is the path
that pixel observations take (uint8 84x84 frames scaled by 1/255, the conv torsos, the learner's
channels-last input) or the tasks themselves: it registers Gymnasium ids ``PixelMinAtar<Game>-v0``
whose observation is the MinAtar state, each of its object channels one 0/255 plane, every cell an
8x8 block, centred in 84x84 (``(84, 84, C)`` uint8, so the Gymnasium adapter hands the agent
``(C, 84, 84)`` with ``obs_scale`` 1/255, exactly what Atari frames look like to it). Same game,
same rewards and same sticky actions (0.1, MinAtar's default) as ``minatar:<Game>``; only the
observation's size and type change.

    PYTHONPATH=bench kickstart train configs/minatar_breakout.yaml env.id=pixel_minatar:PixelMinAtarBreakout-v0 \\
        net.torso=impala_shallow net.precision=auto

``results/learning/README.md`` (Atari Pong) has what it showed.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIDE = 84
CELL = 8
GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
         "SpaceInvaders": "space_invaders"}


class PixelMinAtar(gym.Env):
    """One MinAtar game, observed as ``(84, 84, C)`` uint8 planes (see the module doc)."""

    def __init__(self, game: str, sticky_action_prob: float = 0.1):
        from minatar import Environment

        self._game = Environment(game, sticky_action_prob=sticky_action_prob)
        h, w, c = self._game.state_shape()
        self._pad = ((SIDE - h * CELL) // 2, (SIDE - w * CELL) // 2)
        if min(self._pad) < 0:
            raise ValueError(f"MinAtar {game}: a {h}x{w} grid of {CELL}-pixel cells does not fit {SIDE}x{SIDE}")
        self._block = np.ones((CELL, CELL, 1), np.uint8)
        self._frame = np.zeros((SIDE, SIDE, c), np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, (SIDE, SIDE, c), np.uint8)
        self.action_space = gym.spaces.Discrete(self._game.num_actions())

    def _obs(self) -> np.ndarray:
        state = self._game.state().astype(np.uint8) * 255
        big = np.kron(state, self._block)
        (top, left), (h, w) = self._pad, big.shape[:2]
        self._frame[top:top + h, left:left + w] = big
        return self._frame.copy()

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._game.seed(seed)
        self._game.reset()
        return self._obs(), {}

    def step(self, action):
        reward, terminated = self._game.act(int(action))
        return self._obs(), float(reward), bool(terminated), False, {}


for _name, _game in GAMES.items():
    gym.register(f"PixelMinAtar{_name}-v0", entry_point=PixelMinAtar, kwargs={"game": _game})
