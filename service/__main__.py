from service.cli import main

if __name__ == "__main__":  # spawned children import this module too
    main()
