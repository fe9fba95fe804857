# The offline demo model: synthetic data made on first use, trained on 2 CPU cores.
# Measured on a 2-core AMD EPYC (AVX512-BF16): bf16 + channels_last train at ~28 img/s at 128 px,
# so 8 epochs of 1,440 images take ~7 minutes, leaving room for data generation and evaluation
# inside the 10-minute budget. Override any of these on the command line (make train-demo DEMO_EPOCHS=4).
DEMO_DATA       ?= data/synth
DEMO_IMAGES     ?= 2000
DEMO_SEED       ?= 0
DEMO_RUN        ?= runs/demo
DEMO_EPOCHS     ?= 8
DEMO_INPUT_SIZE ?= 128
DEMO_BATCH_SIZE ?= 16
DEMO_LR         ?= 2e-3
