// trainer SHARDS [options]: trains CSRNet on a crop_shards shard set.
#include "train/trainer.h"

int main(int argc, char** argv) { return csr::RunTrainer(argc, argv); }
