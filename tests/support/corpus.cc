#include "tests/support/corpus.h"

#include "data/text8.h"

namespace ablate::testing {

std::string EnglishText8(int repeats) {
  const std::string prose =
      "A recurrent network reads a text one character at a time and keeps a summary of what it "
      "has seen in its hidden state. At every step it guesses the next character, and the "
      "number of bits it needs to encode the true one tells how good the guess was. Training "
      "lowers that number by following the gradient of the loss through the whole window of "
      "characters, which is why long windows are slow and short ones forget. A sweep tries "
      "every combination of a few choices, such as the cell, the initializer and layer "
      "normalization, so that each choice can be judged on its own. Machines fail during long "
      "sweeps: a worker loses power, a network cable is pulled, a disk fills up. None of this "
      "may change the result, because a curve that was cut and joined again must look exactly "
      "like one that ran without a break. ";
  std::string text;
  for (int i = 0; i < repeats; ++i) text += text8::Clean(prose);
  return text;
}

}  // namespace ablate::testing
