// Real English text in text8 form, for the tests' corpora.
#ifndef ABLATE_TESTS_SUPPORT_CORPUS_H_
#define ABLATE_TESTS_SUPPORT_CORPUS_H_

#include <string>

namespace ablate::testing {

// `repeats` copies of a paragraph of real English prose (about 950 bytes),
// cleaned into text8 form.
std::string EnglishText8(int repeats);

}  // namespace ablate::testing

#endif  // ABLATE_TESTS_SUPPORT_CORPUS_H_
