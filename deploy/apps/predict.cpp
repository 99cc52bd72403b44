// predict --weights FILE [options] IMAGE|DIR ...: counts, heatmaps, videos.
#include "deploy/predict.h"

int main(int argc, char** argv) { return csr::RunPredict(argc, argv); }
