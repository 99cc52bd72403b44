#include "preprocess/crop_shards.h"

int main(int argc, char** argv) { return csr::RunCropShards(argc, argv); }
