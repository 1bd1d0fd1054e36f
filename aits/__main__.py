from aits.cli import main

main()
