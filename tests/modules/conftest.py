import pytest
import torch


def teacher_forced_decoding(model, batch) -> torch.Tensor:
    """The decoding protocol (start, then step) fed the target's codes -> logits [B, C, K] of every level:
    what teacher-forced `forward` must give (a retriever's cached-decoding check)."""
    state = model.start(batch)
    logits, state = model.step(state, None)
    out = [logits]
    for t in range(1, batch.target.shape[1]):
        assert state.level == t
        logits, state = model.step(state, batch.target[:, t - 1])
        out.append(logits)
    return torch.stack(out, dim=1)


@pytest.fixture
def decode_all():
    return teacher_forced_decoding
