// Catch2 v2 main for the spmla test suite.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
