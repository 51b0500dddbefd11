"""Built-in request texts: varied everyday English, deliberately not Penn Treebank text.

Load should look like user traffic, not like the training data (which the model has
memorised and which would make every prompt hit the same cached-looking paths). Sentences
are 10-20 words with a sprinkling of clitics, digits and punctuation, so the server's
normalizer does real work.
"""

from __future__ import annotations

import random

SENTENCES: tuple[str, ...] = (
    "The clouds over the harbour were heavy with rain when the ferry finally left the dock.",
    "She said the new bridge would open next spring if the steel arrived on time.",
    "Most of the shops on the main street close early on Sundays during the winter.",
    "It's hard to tell whether the market will recover before the end of the year.",
    "The committee voted 7 to 2 to delay the decision until more data was available.",
    "He walked his dog along the river every morning before going to the office.",
    "Prices for fresh vegetables rose sharply after the storm damaged farms in the valley.",
    "We don't know yet how many people will come to the meeting on Thursday night.",
    "The company reported a profit of 12 million dollars in the third quarter.",
    "A small bakery near the station sells the best bread I have ever tasted.",
    "Our train was delayed for an hour because a tree had fallen across the tracks.",
    "The museum will show paintings that have not been seen in public for decades.",
    "Investors worried that higher interest rates would slow the growth of new homes.",
    "They couldn't find a parking space, so they left the car at a friend's house.",
    "The teacher asked the students to write a short essay about their summer holidays.",
    "Officials said the water supply was safe to drink after the tests came back clean.",
    "My grandmother grew tomatoes, beans and potatoes in the garden behind her house.",
    "The airline plans to add 30 new routes and hire hundreds of pilots next year.",
    "When the lights went out, everyone in the theatre waited quietly for the show to resume.",
    "The report found that most workers would prefer a shorter week to a higher salary.",
    "A group of volunteers cleaned the beach and collected more than 200 bags of rubbish.",
    "The mayor promised to build more schools and repair the roads in the older districts.",
    "I'll call you back as soon as the meeting ends, probably around four o'clock.",
    "Scientists have found a new species of frog in the forests of the southern hills.",
    "The bank raised its forecast for economic growth after a strong month of exports.",
    "He's been learning to play the piano for three years and practises every evening.",
    "The restaurant was so busy that we had to wait forty minutes for a table.",
    "Analysts expect the merger to be approved despite objections from some shareholders.",
    "The children built a snowman in the park and gave it an old hat and scarf.",
    "Sales of electric cars doubled last year as prices fell and more chargers were built.",
    "The library is looking for people who can help with its reading classes for adults.",
    "After the long flight, all she wanted was a hot shower and a quiet night's sleep.",
    "The government said it would cut taxes for small businesses starting in January.",
    "Our neighbours are moving to the coast because they want to live closer to the sea.",
    "The football match was cancelled when heavy snow covered the pitch on Saturday morning.",
    "Many farmers say the dry weather this summer has been the worst in 50 years.",
    "The new software update fixes several problems but makes the phone slightly slower.",
    "She opened the letter slowly, afraid of what the doctor might have written inside.",
    "The city council will discuss plans for a new bus line at its next meeting.",
    "Demand for oil fell in the spring, and the price dropped to its lowest level in months.",
)


class TextSource:
    """Deterministic per-worker stream of request texts, so runs are repeatable by seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._words: list[str] = []

    def sentence(self) -> str:
        """A whole sentence, e.g. for ``/v1/score``."""
        return self._rng.choice(SENTENCES)

    def prefix(self) -> str:
        """A sentence cut after 3 to all-but-one words, e.g. a prompt for ``/v1/predict``."""
        words = self.sentence().split()
        return " ".join(words[: self._rng.randint(3, len(words) - 1)])

    def next_word(self) -> str:
        """The next word of an endless text; a sentence's last word carries its line break.

        Used by session feeds, which send one word at a time like a typing user.
        """
        if not self._words:
            words = self.sentence().split()
            words[-1] += "\n"
            self._words = words[::-1]
        return self._words.pop()

    def seed(self) -> int:
        """A sampling seed for ``/v1/generate``."""
        return self._rng.randrange(2**31)
