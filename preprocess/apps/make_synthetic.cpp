// make_synthetic: writes a synthetic ShanghaiTech-like dataset (see docs/synthetic.md).
#include "preprocess/synthetic.h"

int main(int argc, char** argv) { return csr::RunMakeSynthetic(argc, argv); }
