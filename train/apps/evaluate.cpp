// evaluate --weights FILE SHARDS[/test] | --root DIR --part A --split test: metrics, CSV, JSON, HTML report.
#include "train/evaluate.h"

int main(int argc, char** argv) { return csr::RunEvaluate(argc, argv); }
