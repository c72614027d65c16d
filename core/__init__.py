"""What every request goes through, whichever app answers it: hostile input
refused at the door (``middleware``), errors in the format the client reads
(``errors``), the API's parser and OPTIONS answer (``parsers``,
``metadata``), and log lines that user input cannot forge (``logs``)."""
