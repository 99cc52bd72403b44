#include "preprocess/gt_gen.h"

int main(int argc, char** argv) { return csr::RunGtGen(argc, argv); }
