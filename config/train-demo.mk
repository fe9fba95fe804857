# The offline demo model: synthetic data made on first use, trained on 2 CPU cores.
# Measured on a 2-core AMD EPYC with AVX512-BF16: bf16 + channels-last training runs at ~36 img/s
# at 96 px (~20 img/s at 128 px), so DEMO_EPOCHS (12) epochs of 1,440 images take ~8 minutes; with
# the data generation (~15 s) and the evaluation the whole target stays under 10 minutes.
# 96 px is the largest input that reaches the quality bar in that time; real-data training
# (make train) defaults to 256 px. Override any value: make train-demo DEMO_EPOCHS=4
DEMO_DATA       ?= data/synth
DEMO_IMAGES     ?= 2000
DEMO_SEED       ?= 0
DEMO_RUN        ?= runs/demo
DEMO_EPOCHS     ?= 12
DEMO_INPUT_SIZE ?= 96
DEMO_BATCH_SIZE ?= 16
DEMO_LR         ?= 3e-3
# The training's progress, rewritten every epoch: the page of `make run` shows it.
DEMO_PROGRESS   ?= $(DEMO_RUN)/progress.json
