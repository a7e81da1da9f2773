"""Names of the files a step writes; shared by ops, the compiler and the engines."""

INPUT_JSON = "input.json"
COMPLETED_INPUT = "out.json"  # what dp train writes: the input after its own completion
LCURVE = "lcurve.out"
TRAIN_LOG = "train.log"
FREEZE_LOG = "freeze.log"
TEST_LOG = "test.log"
BIAS_LOG = "change-bias.log"
CHECKPOINT = "model.ckpt.pt"
FROZEN_MODEL = "model.pth"
DETAIL_PREFIX = "detail"
WORK_DIR = "work"
